"""Models, one module per family. Each registers its constructors into MODELS when imported;
`MODELS.get(name)` imports just the family that registers `name` (registry_index.json)."""
