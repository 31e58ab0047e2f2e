"""AiiDA data types of aiida-irspec."""
