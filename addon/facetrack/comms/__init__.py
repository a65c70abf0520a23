"""Communication with the rest of the house: MQTT."""
