"""Speed measurements: fastmlp against PyTorch and scikit-learn (``fastmlp bench``)."""

from fastmlp.bench.compare import BatchResult, compare, markdown_table, write_report

__all__ = ["BatchResult", "compare", "markdown_table", "write_report"]
