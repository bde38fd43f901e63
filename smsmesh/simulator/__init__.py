"""smsmesh's SMSC simulator: a stand-in carrier for local mode, tests and benchmarks.

from smsmesh.simulator import Simulator, SimulatorSettings

async with Simulator(SimulatorSettings(port=0, receipt_delay=0)) as sim:
    ...bind to sim.port...
"""

from smsmesh.simulator.counters import Counters
from smsmesh.simulator.messages import ReceivedSubmit
from smsmesh.simulator.server import MoRejected, NoReceiver, Simulator, serve
from smsmesh.simulator.settings import (
    SettingsError,
    SimulatorSettings,
    load_settings,
    settings_from_args,
)

__all__ = [
    "Counters",
    "MoRejected",
    "NoReceiver",
    "ReceivedSubmit",
    "SettingsError",
    "Simulator",
    "SimulatorSettings",
    "load_settings",
    "serve",
    "settings_from_args",
]
