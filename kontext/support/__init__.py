"""Cross-cutting helpers with no domain knowledge: logging, metrics, background tasks."""
