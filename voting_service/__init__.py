"""voting-service: the public online vote of the Jiangsu Most Beautiful Craftsman selection."""
