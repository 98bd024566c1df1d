"""What a run prints and writes; reads the results only and imports no row.

`table` (the ingest rows and footnotes) with `phases` (burst, overload and
embedded notes), `scenarios` (the fan-out, command and history sections),
`profiles` (py-spy rankings), `files` (the JSON record and the plot).
"""
