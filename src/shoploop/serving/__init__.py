"""The request path: search, similar, recommend (predict) and the challenger's interleaving."""
