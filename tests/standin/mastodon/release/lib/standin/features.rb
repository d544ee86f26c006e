# frozen_string_literal: true

module StandIn
  # What the code of each stand-in release expects from the schema. v4.5.14 added the
  # statuses.language column (pre-deployment migration): from then on the code reads and writes it,
  # so running that code on an unmigrated database fails, as a real release would.
  module Features
    module_function

    def status_language?
      Gem::Version.new(Mastodon::Version.to_s) >= Gem::Version.new('4.5.14')
    end
  end
end
