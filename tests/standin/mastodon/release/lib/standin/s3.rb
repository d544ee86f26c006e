# frozen_string_literal: true

require 'digest'
require 'net/http'
require 'openssl'
require 'stringio'
require 'uri'

module StandIn
  # fedictl test stand-in, not Mastodon: media storage through an S3 API, with the settings, object
  # keys and public URLs of Mastodon's config/initializers/paperclip.rb (kt-paperclip + aws-sdk-s3).
  # Ruby's standard library only: Net::HTTP and an AWS Signature Version 4 signer. Certificates are
  # verified against OpenSSL's default store (the system's, /etc/ssl/certs on Debian).
  #
  # Not honoured: multipart uploads above S3_MULTIPART_THRESHOLD (one PUT whatever the size),
  # S3_SIGNATURE_VERSION (always v4), S3_FORCE_SINGLE_REQUEST / S3_ENABLE_CHECKSUM_MODE (no
  # downloads), S3_KEY_PREFIX, S3_BATCH_DELETE_* (nothing is ever deleted from the bucket).
  module S3
    # The storage answered with an error status (aws-sdk's Aws::S3::Errors::*; Mastodon does not
    # rescue those in the media API, so the request ends in a 500).
    class Error < StandardError
      attr_reader :code

      def initialize(message, code = nil)
        super(message)
        @code = code
      end
    end

    # The storage could not be reached or its certificate was refused (aws-sdk's
    # Seahorse::Client::NetworkingError; Mastodon's API answers 503 for it).
    class NetworkingError < StandardError; end

    # paperclip.rb's s3_headers.
    CACHE_CONTROL = 'public, max-age=315576000, immutable'
    NETWORK_ERRORS = [
      SocketError, EOFError, IOError, SystemCallError, OpenSSL::SSL::SSLError,
      Net::OpenTimeout, Net::ReadTimeout, Net::WriteTimeout
    ].freeze

    module_function

    def enabled?
      ENV['S3_ENABLED'] == 'true'
    end

    # The settings, read as paperclip.rb reads them (ENV.fetch: a key set to '' stays '').
    def region
      ENV.fetch('S3_REGION') { 'us-east-1' }
    end

    def bucket
      ENV.fetch('S3_BUCKET', '')
    end

    def protocol
      ENV.fetch('S3_PROTOCOL') { 'https' }
    end

    def host_name
      ENV.fetch('S3_HOSTNAME') { "s3-#{region}.amazonaws.com" }
    end

    # S3_PERMISSION defaults to public-read; an empty value sends no ACL at all (upstream's
    # `s3_permissions: ->(*) { nil }` when ENV['S3_PERMISSION'] == '').
    def permission
      value = ENV.fetch('S3_PERMISSION') { 'public-read' }
      value.empty? ? nil : value
    end

    # The URL Mastodon hands out for an object (kt-paperclip's interpolations, as paperclip.rb
    # selects them):
    # - S3_ALIAS_HOST (or the older S3_CLOUDFRONT_HOST) present: `:s3_alias_url`,
    #   <S3_PROTOCOL>://<alias>/<key>;
    # - otherwise `:s3_path_url`, <S3_PROTOCOL>://<s3_host_name>/<bucket>/<key>, where s3_host_name is
    #   S3_HOSTNAME, else s3-<S3_REGION>.amazonaws.com. That holds with S3_ENDPOINT too: paperclip.rb
    #   sets `:s3_path_url` for it, which uses the host name, never the endpoint. So an endpoint off
    #   AWS without S3_ALIAS_HOST or S3_HOSTNAME gives URLs on amazonaws.com, as upstream does.
    # With S3_PROTOCOL='' the URL is protocol-relative (//host/key), like kt-paperclip's.
    def public_url(key)
      scheme = protocol.empty? ? '' : "#{protocol}:"
      if ENV.key?('S3_ALIAS_HOST') || ENV.key?('S3_CLOUDFRONT_HOST')
        "#{scheme}//#{ENV['S3_ALIAS_HOST'] || ENV['S3_CLOUDFRONT_HOST']}/#{key}"
      else
        "#{scheme}//#{host_name}/#{bucket}/#{key}"
      end
    end

    # Where aws-sdk-s3 sends the request for an object (nil key: the bucket itself):
    # - S3_ENDPOINT present: path-style on it, <endpoint>/<bucket>/<key> (force_path_style unless
    #   S3_OVERRIDE_PATH_STYLE=true; then <scheme>://<bucket>.<endpoint host>/<key> when the bucket
    #   name allows it);
    # - otherwise AWS's regional endpoint, virtual-hosted when the bucket name allows it.
    def object_uri(key = nil)
      if ENV.key?('S3_ENDPOINT')
        endpoint = URI(ENV['S3_ENDPOINT'])
        if ENV['S3_OVERRIDE_PATH_STYLE'] == 'true' && dns_compatible?(bucket, endpoint.scheme == 'https') &&
           !endpoint.host.match?(/\A[\d.]+\z|:/) # not on an IP address endpoint
          endpoint.host = "#{bucket}.#{endpoint.host}"
          endpoint.path = "/#{encode_path(key.to_s)}"
        else
          endpoint.path = "#{endpoint.path.chomp('/')}/#{encode_path([bucket, key].compact.join('/'))}"
        end
        endpoint
      elsif dns_compatible?(bucket, true)
        URI("https://#{bucket}.s3.#{region}.amazonaws.com/#{encode_path(key.to_s)}")
      else
        URI("https://s3.#{region}.amazonaws.com/#{encode_path([bucket, key].compact.join('/'))}")
      end
    end

    # aws-sdk's BucketDns rule: a DNS label set, and no dots over https (the certificate would not match).
    def dns_compatible?(name, ssl)
      name.match?(/\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\z/) && !name.include?('..') &&
        !name.match?(/\A\d+\.\d+\.\d+\.\d+\z/) && !(ssl && name.include?('.'))
    end

    # Uploads the file at PATH as KEY: PutObject with paperclip's headers (Content-Type,
    # Cache-Control, x-amz-acl from S3_PERMISSION, x-amz-storage-class from S3_STORAGE_CLASS).
    # Like kt-paperclip's flush_writes, a NoSuchBucket answer creates the bucket and retries once.
    # Returns the URI it wrote to.
    def put_file(key, path, content_type)
      headers = { 'content-type' => content_type, 'cache-control' => CACHE_CONTROL }
      headers['x-amz-acl'] = permission if permission
      headers['x-amz-storage-class'] = ENV['S3_STORAGE_CLASS'] if ENV.key?('S3_STORAGE_CLASS')
      uri = object_uri(key)
      begin
        File.open(path, 'rb') { |file| request('PUT', uri, headers, file, Digest::SHA256.file(path).hexdigest) }
      rescue Error => e
        raise unless e.code == 'NoSuchBucket'

        create_bucket
        File.open(path, 'rb') { |file| request('PUT', uri, headers, file, Digest::SHA256.file(path).hexdigest) }
      end
      uri
    end

    # CreateBucket, with a LocationConstraint outside us-east-1 (aws-sdk adds it from the region).
    def create_bucket
      body = ''
      unless region == 'us-east-1'
        body = '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' \
               "<LocationConstraint>#{region}</LocationConstraint></CreateBucketConfiguration>"
      end
      request('PUT', object_uri, { 'content-type' => 'application/xml' }, StringIO.new(body), Digest::SHA256.hexdigest(body))
    end

    # One signed request; raises Error for a non-2xx answer, NetworkingError when it cannot talk.
    def request(method, uri, headers, body_io, payload_hash)
      time = Time.now.utc
      headers = headers.merge(
        'host' => host_header(uri),
        'content-length' => body_io.size.to_s,
        'x-amz-content-sha256' => payload_hash,
        'x-amz-date' => time.strftime('%Y%m%dT%H%M%SZ'),
      )
      headers['authorization'] = signer.sign(method: method, path: uri.path, headers: headers,
                                             payload_hash: payload_hash, time: time).authorization
      http_request = Net::HTTPGenericRequest.new(method, true, true, uri.path, headers)
      http_request.body_stream = body_io
      response = http(uri).start { |connection| connection.request(http_request) }
      return response if response.is_a?(Net::HTTPSuccess)

      code = response.body.to_s[%r{<Code>(.*?)</Code>}m, 1] || 'no S3 error code'
      message = response.body.to_s[%r{<Message>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</Message>}m, 1].to_s.strip
      raise Error.new("#{method} #{uri} -> #{response.code} #{code}: #{message}", code)
    rescue *NETWORK_ERRORS => e
      raise NetworkingError, "#{method} #{uri}: #{e.class}: #{e.message}"
    end

    def http(uri)
      http = Net::HTTP.new(uri.host, uri.port)
      http.use_ssl = uri.scheme == 'https' # verify_mode VERIFY_PEER and OpenSSL's default store
      http.open_timeout = ENV.fetch('S3_OPEN_TIMEOUT') { '5' }.to_i
      http.read_timeout = ENV.fetch('S3_READ_TIMEOUT') { '5' }.to_i
      http
    end

    def host_header(uri)
      uri.port == uri.default_port ? uri.host : "#{uri.host}:#{uri.port}"
    end

    def signer
      Signer.new(access_key_id: ENV.fetch('AWS_ACCESS_KEY_ID', ''),
                 secret_access_key: ENV.fetch('AWS_SECRET_ACCESS_KEY', ''), region: region)
    end

    # S3's URI encoding of a key: every byte but A-Z a-z 0-9 - . _ ~ as %XX, slashes kept, once.
    def encode_path(key)
      key.split('/', -1).map { |segment| uri_encode(segment) }.join('/')
    end

    def uri_encode(value)
      value.to_s.b.gsub(/[^A-Za-z0-9\-._~]/n) { |char| format('%%%02X', char.ord) }
    end

    # AWS Signature Version 4 for one request whose headers are all signed ("Authorization header"
    # form, single-chunk payload). Reproduces AWS's documented S3 examples (lab_check_mastodon_s3.sh).
    class Signer
      ALGORITHM = 'AWS4-HMAC-SHA256'
      Signature = Struct.new(:authorization, :signature, :canonical_request, :string_to_sign)

      def initialize(access_key_id:, secret_access_key:, region:, service: 's3')
        @access_key_id = access_key_id
        @secret_access_key = secret_access_key
        @region = region
        @service = service
      end

      # PATH is already URI-encoded (S3.encode_path); QUERY the canonical query string.
      def sign(method:, path:, headers:, payload_hash:, time:, query: '')
        amz_date = time.utc.strftime('%Y%m%dT%H%M%SZ')
        date = amz_date[0, 8]
        canonical = headers.map { |name, value| [name.downcase, value.to_s.strip.gsub(/\s+/, ' ')] }.sort
        signed_headers = canonical.map(&:first).join(';')
        canonical_request = [method, path, query, canonical.map { |name, value| "#{name}:#{value}\n" }.join,
                             signed_headers, payload_hash].join("\n")
        scope = "#{date}/#{@region}/#{@service}/aws4_request"
        string_to_sign = [ALGORITHM, amz_date, scope, Digest::SHA256.hexdigest(canonical_request)].join("\n")
        key = [date, @region, @service, 'aws4_request'].reduce("AWS4#{@secret_access_key}") do |k, part|
          OpenSSL::HMAC.digest('SHA256', k, part)
        end
        signature = OpenSSL::HMAC.hexdigest('SHA256', key, string_to_sign)
        Signature.new("#{ALGORITHM} Credential=#{@access_key_id}/#{scope}, SignedHeaders=#{signed_headers}, " \
                      "Signature=#{signature}", signature, canonical_request, string_to_sign)
      end
    end
  end
end
