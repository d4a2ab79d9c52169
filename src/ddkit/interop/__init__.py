"""Other libraries' formats in and out: diffusers (:mod:`.diffusers`)."""
