# frozen_string_literal: true

require 'json'

module StandIn
  # The stand-in's "compiled assets": the files under public/packs/ are shipped ready; precompiling
  # only (re)writes public/packs/manifest.json from them, and leaves it alone when it is current.
  module Assets
    MANIFEST = 'public/packs/manifest.json'

    module_function

    def manifest
      packs = File.join(ROOT, 'public', 'packs')
      files = Dir.glob('**/*', base: packs).sort.select do |path|
        File.file?(File.join(packs, path)) && path != 'manifest.json'
      end
      files.to_h { |path| [File.basename(path), "/packs/#{path}"] }
    end

    def manifest_json
      "#{JSON.pretty_generate(manifest)}\n"
    end

    # Returns true when the file was written.
    def write_manifest
      path = File.join(ROOT, MANIFEST)
      content = manifest_json
      return false if File.exist?(path) && File.read(path) == content

      File.write(path, content)
      true
    end
  end
end
