"""Model families; importing one registers its variants."""
