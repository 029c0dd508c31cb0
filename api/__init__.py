"""The ldaq REST API as a Flask application factory: `gunicorn 'api:create_app()'`.

Nothing here imports torch: the API process never loads a model.
"""

from __future__ import annotations

from flask import Flask

from api.auth import install_auth
from api.dashboard import dashboard_blueprint
from api.errors import install_error_handlers
from api.experiments import experiments_blueprint
from api.generate import generate_blueprint
from api.health import health_blueprint
from api.model_pairs import model_pairs_blueprint
from api.openapi import openapi_blueprint
from api.request_log import install_request_log
from ldaq.backend import Backend
from ldaq.migrate import upgrade_database
from ldaq.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from one Settings object (the environment's when None), schema migrated.

    `app.extensions["ldaq"]` holds the `ldaq.backend.Backend`: settings, database, doorbell,
    model pairs.
    """
    settings = settings or Settings.from_env()
    upgrade_database(settings.database_url)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["ldaq"] = Backend.from_settings(settings)
    install_request_log(app)  # first, so that refused requests are timed and logged too
    install_auth(app, settings.api_token)
    install_error_handlers(app)
    for blueprint in (
        experiments_blueprint, model_pairs_blueprint, generate_blueprint, health_blueprint, openapi_blueprint,
        dashboard_blueprint,
    ):
        app.register_blueprint(blueprint)
    return app
