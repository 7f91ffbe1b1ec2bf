"""Small helpers every layer may use, none of which knows about detection: devices (:mod:`.devices`),
optional packages (:mod:`.optional`), atomic file writes (:mod:`.files`), the torch hub download cache
(:mod:`.hub`), rank queries and collectives (:mod:`.distributed`), drawing boxes (:mod:`.draw`) and
config fields that are command-line flags (:mod:`.flags`)."""
