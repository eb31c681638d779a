"""Training-side tools: the synthetic corpus, the REACT dataset reader, the ReactDiff model, metrics and export."""
