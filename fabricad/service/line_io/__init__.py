"""Talking to the line: verdicts, defects and stop signals out to the PLC (MQTT today; OPC UA and
Modbus follow the same `Sink` interface), roll start/end and encoder positions in. Nothing here
ever blocks inspection: each sink sends from its own on-disk outbox on its own thread."""
