"""The apikeys app: scoped, revocable API keys for scripts and dashboards (CONTRACT §8)."""
