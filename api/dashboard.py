"""The dashboard: one page that polls the REST API, and the files it needs.

The page holds no data of its own; it fetches /api/v1 like any other client, so what it shows is
exactly what the API says. Plotly's browser bundle comes from the installed plotly package, so the
page works offline and the repository carries no vendored copy.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, render_template, send_file

dashboard_blueprint = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/dashboard",
)


@dashboard_blueprint.get("/")
def dashboard_page() -> str:
    """The single page; which experiment it shows comes from `?experiment=<id>`, read in the browser."""
    return render_template("dashboard.html")


@dashboard_blueprint.get("/static/vendor/plotly.min.js")
def plotly_bundle() -> Response:
    """plotly.js as bundled with the plotly Python package, which is already a dependency."""
    # An installed (unzipped) package, so the resource is a real file send_file can stream.
    bundle = resources.files("plotly").joinpath("package_data", "plotly.min.js")
    return send_file(bundle, mimetype="text/javascript", max_age=86400)
