"""EV charging points (class `charger`): JSON telemetry. OCPP-J frames: `ocpp.py`."""

from adapters._base import DeviceClass, MetaField, Metric, State
from adapters._jsonv1 import json_adapter

# OCPP 1.6 ChargePointStatus and ChargePointErrorCode.
OCPP_STATUSES = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)
OCPP_ERROR_CODES = (
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "NoError",
    "OtherError",
    "OverCurrentFailure",
    "OverVoltage",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "WeakSignal",
)

CHARGER = DeviceClass(
    name="charger",
    title="EV charging point",
    expected_interval_s=900,
    online_s=86400,  # any message within 24 h
    metrics=(
        Metric("energy_wh", "Wh", 0, 1e13, "active energy import register", True, True),
        Metric("power_w", "W", 0, 1_200_000, "active power", pointed=True),
        Metric("current_a", "A", 0, 600, "current", pointed=True),
        Metric("voltage_v", "V", 0, 1000, "voltage", pointed=True),
        Metric("soc_pct", "%", 0, 100, "vehicle state of charge", pointed=True),
        Metric("temp_c", "°C", -40, 120, "temperature", pointed=True),
    ),
    states=(
        State("status", OCPP_STATUSES, "OCPP 1.6 connector status (point 0: whole charger)", True),
        State("error_code", OCPP_ERROR_CODES, "OCPP 1.6 error code", True),
    ),
    meta=(
        MetaField("rated_power_kw", float, "rated power", 0, 1200),
        MetaField("connectors", int, "number of connectors", 1, 64),
        MetaField("current_type", str, "AC or DC", choices=("AC", "DC")),
        MetaField("operator", str, "operator name"),
        MetaField("vendor", str, "charge point vendor (OCPP BootNotification)"),
        MetaField("model", str, "charge point model (OCPP BootNotification)"),
        MetaField("serial_number", str, "charge point serial number (OCPP BootNotification)"),
        MetaField("firmware_version", str, "firmware version (OCPP BootNotification)"),
    ),
)

ADAPTER = json_adapter(CHARGER)
