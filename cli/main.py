"""`ldaq`: one command for the engine, the service and the client.

Each group of subcommands lives in its own module; heavy imports (torch) happen inside commands.
"""

import click

from cli import bench_commands, client_commands, engine_commands, ledger_bench, organism_commands, service_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """ldaq: logit diff amplification experiments, from one laptop to a GPU cluster."""


for module in (engine_commands, bench_commands, organism_commands, service_commands, client_commands, ledger_bench):
    for command in module.COMMANDS:
        cli.add_command(command)
