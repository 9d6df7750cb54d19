"""compose: the khop umbrella CLI, the local launcher and the report."""
