"""The batch tier (docs/batch.md): files and batches in OpenAI's and Anthropic's shapes, validated
before anything runs, each line run through the request pipeline by a worker off the request path."""
