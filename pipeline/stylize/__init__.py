"""Stylisation: a face redrawn in another domain (a Domain Transfer Network, Taigman et al. 2017)."""
