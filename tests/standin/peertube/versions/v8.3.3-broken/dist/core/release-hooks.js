'use strict'
// fedictl TEST STAND-IN, NOT PeerTube: v8.3.3-broken replaces the shared hooks. Its
// migrations have run (schema 1130) when this is called; then it dies, before listening, at
// every start (systemd's Restart=always keeps trying), so the role's rollback must take over.

exports.afterMigrations = function afterMigrations () {
  throw new Error('stand-in v8.3.3 is broken on purpose')
}
