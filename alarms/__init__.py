"""The alarms app: rules over device metrics, alarms with their events, webhooks."""
