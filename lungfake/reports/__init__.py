"""What a user reads or downloads: dashboard charts, case reports, the model card, the README's results tables, and
the outputs of batches and regions.

May import everything below it (lungfake.evaluation and down); only lungfake.cli and the app import it."""
