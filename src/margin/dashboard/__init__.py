"""The operator's dashboard (`/dashboard`, docs/dashboard.md): read-only, server-rendered pages over
the ledger's rollups, each with a JSON twin under `/admin/api/` holding the same figures."""
