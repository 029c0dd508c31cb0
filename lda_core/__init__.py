"""lda_core: logit diff amplification as a plain library (no web, no queue, no database).

Import the module you need (`lda_core.generate`, `lda_core.detect`, ...). This package file
imports nothing, so `lda_core.detect` and `lda_core.stats` stay free of torch for the API.
"""
