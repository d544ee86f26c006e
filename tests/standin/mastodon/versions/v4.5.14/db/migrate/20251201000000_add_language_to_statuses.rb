# frozen_string_literal: true

# fedictl test stand-in (v4.5.14, pre-deployment), not Mastodon: additive, so v4.5.13's code keeps
# running on the migrated schema while v4.5.14's code needs it.
class AddLanguageToStatuses < StandIn::Migration
  def up
    execute 'ALTER TABLE statuses ADD COLUMN language character varying'
  end
end
