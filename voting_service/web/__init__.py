"""The HTTP edge: the server contract, the JSON API, the console and the public pages; beside
them the helpers they share (problems, machine auth, words, assets, metrics)."""
