"""Personalize's filters: the expression language (``parser``), what an expression may name
(``schema``), how a tree becomes masks over items or users (``evaluation``), and the filters
themselves as masks over the catalog (``masks``: parse once, bind values per request)."""
