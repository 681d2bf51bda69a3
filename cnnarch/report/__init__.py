"""The reproduction report: figures (matplotlib, Agg), report.md, self-contained report.html, results.json."""
