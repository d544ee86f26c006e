# frozen_string_literal: true

require 'fileutils'
require 'securerandom'
require 'uri'
require_relative 's3'

module StandIn
  # fedictl test stand-in, not Mastodon: local media attachments as Mastodon's MediaAttachment and
  # Paperclip store them, without any processing (no thumbnails, no transcoding, no metadata): the
  # uploaded bytes are the original. Rows go to media_attachments (file_file_name, file_file_size;
  # the stand-in's schema has no account or content type columns, so the content type is read back
  # from the file name's extension, which Mastodon also derives from it).
  module Media
    IMAGE_LIMIT = 16 * 1024 * 1024 # MediaAttachment::IMAGE_LIMIT, 16.megabytes
    VIDEO_LIMIT = 99 * 1024 * 1024 # MediaAttachment::VIDEO_LIMIT, also for audio
    # The content types the stand-in accepts (a subset of Mastodon's supported_mime_types), their
    # attachment type, and file extensions, the preferred one first.
    CONTENT_TYPES = {
      'image/jpeg' => ['image', %w(jpeg jpg jpe)],
      'image/png' => ['image', %w(png)],
      'image/gif' => ['image', %w(gif)],
      'image/webp' => ['image', %w(webp)],
      'image/avif' => ['image', %w(avif)],
      'image/heic' => ['image', %w(heic)],
      'image/heif' => ['image', %w(heif)],
      'video/mp4' => ['video', %w(mp4 m4v)],
      'video/webm' => ['video', %w(webm)],
      'video/quicktime' => ['video', %w(mov qt)],
      'audio/mpeg' => ['audio', %w(mp3 mpga)],
      'audio/ogg' => ['audio', %w(ogg oga opus)],
      'audio/wav' => ['audio', %w(wav)],
      'audio/flac' => ['audio', %w(flac)],
      'audio/mp4' => ['audio', %w(m4a)],
    }.freeze

    # A validation failure: the API answers 422 with "Validation failed: MESSAGE", as Rails does.
    class Invalid < StandardError; end

    module_function

    # Paperclip's :id_partition: 1 -> 000/000/001.
    def id_partition(id)
      format('%09d', id.to_i).scan(/\d{3}/).join('/')
    end

    # Paperclip's path ':class/:attachment/:id_partition/:style/:filename' for the original.
    def key(id, file_name)
      "media_attachments/files/#{id_partition(id)}/original/#{file_name}"
    end

    # The content type Paperclip records: the one the client sent, or, when it sent none (or the
    # generic application/octet-stream), the one the file name's extension stands for.
    def content_type_of(declared, original_name)
      declared = declared.to_s.split(';').first.to_s.strip.downcase
      return declared unless declared.empty? || declared == 'application/octet-stream'

      content_type_for_extension(File.extname(original_name.to_s).delete_prefix('.').downcase) || declared
    end

    def content_type_for_extension(extension)
      CONTENT_TYPES.find { |_, (_, extensions)| extensions.include?(extension) }&.first
    end

    # Attachmentable#obfuscate_file_name then #set_file_extension: 16 random hex digits, and the
    # original extension if it fits the content type, else the content type's preferred one.
    def stored_file_name(original_name, content_type)
      extensions = CONTENT_TYPES.fetch(content_type)[1]
      original = File.extname(original_name.to_s).delete_prefix('.').downcase
      "#{SecureRandom.hex(8)}.#{extensions.include?(original) ? original : extensions.first}"
    end

    def validate!(content_type, size)
      type, = CONTENT_TYPES[content_type]
      raise Invalid, 'File content type is invalid, File is invalid' unless type

      limit = type == 'image' ? IMAGE_LIMIT : VIDEO_LIMIT
      raise Invalid, "File file size must be less than #{limit / 1024 / 1024} MB" if size > limit
    end

    # Creates the row and stores the file in one transaction, as Paperclip writes the file in an
    # after_save callback: a failed write leaves no row. Returns the attachment (see #attachment).
    def create(original_name, declared_type, path)
      content_type = content_type_of(declared_type, original_name)
      size = File.size(path)
      validate!(content_type, size)
      file_name = stored_file_name(original_name, content_type)
      DB.with('mastodon-standin: web') do |connection|
        connection.transaction do
          id = DB.value(connection, <<~SQL, [file_name, size]).to_i
            INSERT INTO media_attachments (file_file_name, file_file_size) VALUES ($1, $2) RETURNING id
          SQL
          where = store(key(id, file_name), path, content_type)
          $stdout.puts "[stand-in web] media attachment #{id} stored at #{where}"
          attachment(id, file_name)
        end
      end
    end

    # A local attachment not yet attached to a status (what GET /api/v1/media/:id may show), or nil.
    def find_unattached(id)
      return nil unless id.to_s.match?(/\A\d{1,18}\z/)

      DB.with('mastodon-standin: web') do |connection|
        row = connection.exec_params(<<~SQL, [id]).first
          SELECT id, file_file_name FROM media_attachments
          WHERE id = $1 AND status_id IS NULL AND remote_url = '' AND file_file_name IS NOT NULL
        SQL
        row && attachment(row['id'].to_i, row['file_file_name'])
      end
    end

    # S3 (S3_ENABLED=true) or the file system under PAPERCLIP_ROOT_PATH, as paperclip.rb chooses.
    def store(key, path, content_type)
      return S3.put_file(key, path, content_type).to_s if S3.enabled?

      target = File.join(Config.paperclip_root, key)
      FileUtils.mkdir_p(File.dirname(target))
      FileUtils.cp(path, target)
      FileUtils.chmod(0o666 & ~File.umask, target) # Paperclip's default file permissions
      target
    end

    # The URL the API hands out (REST::MediaAttachmentSerializer#url = full_asset_url(file.url)):
    # with S3 the object's URL (S3.public_url); on the file system PAPERCLIP_ROOT_URL (default
    # /system) + the key, joined to CDN_HOST if set, else https://WEB_DOMAIN. A protocol-relative
    # S3 URL is joined to that host the same way, so it gets its scheme.
    def url(key)
      asset_host = ENV.fetch('CDN_HOST', '')
      asset_host = "https://#{Config.web_domain}/" if asset_host.empty?
      source = S3.enabled? ? S3.public_url(key) : "#{ENV.fetch('PAPERCLIP_ROOT_URL', '/system')}/#{key}"
      URI.join(asset_host, source).to_s
    end

    # REST::MediaAttachmentSerializer's attributes for a processed local attachment; the stand-in
    # makes no previews, so preview_url is null, as upstream's for media without a small style.
    def attachment(id, file_name)
      content_type = content_type_for_extension(File.extname(file_name).delete_prefix('.'))
      {
        id: id.to_s,
        type: content_type ? CONTENT_TYPES[content_type][0] : 'unknown',
        url: url(key(id, file_name)),
        preview_url: nil,
        remote_url: nil,
        preview_remote_url: nil,
        text_url: nil,
        meta: {},
        description: nil,
        blurhash: nil,
      }
    end
  end
end
