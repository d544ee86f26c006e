'use strict'
// fedictl TEST STAND-IN, NOT PeerTube: per-release behaviour at start. The healthy releases do
// nothing here; versions/v8.3.3-broken replaces this file with one that crashes.

exports.afterMigrations = function afterMigrations () {}
