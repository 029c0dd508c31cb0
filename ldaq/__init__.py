"""ldaq: the experiment service around lda_core (settings, ledger, doorbell, command line)."""
