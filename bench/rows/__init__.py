"""The rows the bench prints, and the phases that measure an ingest row.

Ingest rows (one table): `ceiling`, `hub`, `scale`, `naive`, `embedded` on
`base.Row`, `djangorow` for what hub, scale and naive share; measured by
`runner` (prime, ladder, latency, count) with `burst` and `overload`, all on
`driver`. Rows of their own section: `fanout`, `commands` (both on `fleet`),
`history`, dispatched by `scenarios`.
"""
