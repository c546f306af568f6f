-- Schema 5: what kind of JSON number each `block_values` array came from, so typed tables
-- (`history.parquet`) can be rendered from the value arrays without parsing the text: a bit
-- set of 1 = some value was a JSON integer, 2 = some value was a JSON float (or NaN/±Infinity),
-- 4 = some row of the block must be rendered from its text (duplicate keys, or a key holding
-- U+0000, which the dictionary spells U+FFFD). NULL for blocks written before schema 5: their
-- tables are rendered from the text, as every table was before.
ALTER TABLE wandb.block_values ADD COLUMN kinds smallint;
