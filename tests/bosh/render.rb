#!/usr/bin/env ruby
# Renders a BOSH job's templates as the director does, for the tests (the bosh CLI and a
# director are not needed).
#
# usage: ruby tests/bosh/render.rb JOB_DIR MANIFEST OUT_DIR
#
# MANIFEST is a deployment manifest (the instance group holding the job gives its
# properties: the job's own, else the instance group's, else the global ones, as the
# director does) or a bare mapping of properties (deployment name "test-deployment").
# As the director: only properties declared in the job's spec are seen, each with the
# manifest's value or else the spec's default; `p(name)` raises for a property with
# neither, `p(name, default)` and `if_p` do not; templates use ERB with trim mode "-"
# and see `spec` (deployment, name, index, id, az, address, ip, bootstrap, networks,
# job). Every template is rendered before any file is written, so a failure writes
# nothing; it prints the director's "Error filling in template" line(s) and exits 1.

require 'erb'
require 'fileutils'
require 'ostruct'
require 'yaml'

# The job's properties as the director resolves them: a nested hash.
def resolve_properties(spec_properties, given)
  resolved = {}
  (spec_properties || {}).each do |name, definition|
    value = lookup(given, name)
    value = (definition || {})['default'] if value.nil?
    next if value.nil?
    path = name.split('.')
    leaf = path[0..-2].reduce(resolved) { |hash, key| hash[key] ||= {} }
    leaf[path.last] = value
  end
  resolved
end

# The value at a dotted name in a nested hash, or nil.
def lookup(hash, name)
  name.split('.').reduce(hash) do |current, key|
    return nil unless current.is_a?(Hash) && current.key?(key)
    current[key]
  end
end

# What a template sees: p, if_p and spec, as in the director's EvaluationContext.
class EvaluationContext
  class UnknownProperty < StandardError; end

  # The `else` of if_p after a block that ran, and after one that did not.
  class ActiveElse
    def initialize(context)
      @context = context
    end

    def else
      yield
    end
  end

  class InactiveElse
    def else; end
  end

  attr_reader :spec

  def initialize(properties, spec)
    @properties = properties
    @spec = spec
  end

  def p(*args)
    names = Array(args[0])
    names.each do |name|
      value = lookup(@properties, name)
      return value unless value.nil?
    end
    return args[1] if args.length == 2
    raise UnknownProperty, "Can't find property '#{names.join("', or '")}'"
  end

  def if_p(*names)
    values = names.map do |name|
      value = lookup(@properties, name)
      return ActiveElse.new(self) if value.nil?
      value
    end
    yield(*values)
    InactiveElse.new
  end

  def get_binding
    binding
  end
end

def to_struct(value)
  case value
  when Hash then OpenStruct.new(value.transform_values { |v| to_struct(v) })
  when Array then value.map { |v| to_struct(v) }
  else value
  end
end

job_dir, manifest_path, out_dir = ARGV
unless job_dir && manifest_path && out_dir
  warn 'usage: ruby tests/bosh/render.rb JOB_DIR MANIFEST OUT_DIR'
  exit 2
end

job_spec = YAML.safe_load(File.read(File.join(job_dir, 'spec')))
job_name = job_spec.fetch('name')
manifest = YAML.safe_load(File.read(manifest_path)) || {}

deployment = 'test-deployment'
group_name = 'test-group'
given = manifest
if manifest.is_a?(Hash) && manifest.key?('instance_groups')
  deployment = manifest.fetch('name', deployment)
  group = manifest['instance_groups'].find do |ig|
    (ig['jobs'] || []).any? { |job| job['name'] == job_name }
  end
  abort "#{manifest_path}: no instance group has the job #{job_name}" unless group
  group_name = group['name']
  job = group['jobs'].find { |j| j['name'] == job_name }
  given = job['properties'] || group['properties'] || manifest['properties'] || {}
end

properties = resolve_properties(job_spec['properties'], given)
spec = to_struct(
  'deployment' => deployment,
  'name' => group_name,
  'index' => 0,
  'id' => 'b02f4682-6d9e-4c3b-a8d4-7f3c2b1e9a50',
  'az' => 'z1',
  'address' => '10.0.16.5',
  'ip' => '10.0.16.5',
  'bootstrap' => true,
  'networks' => { 'default' => { 'ip' => '10.0.16.5', 'default' => %w(dns gateway) } },
  'job' => { 'name' => job_name },
  'release' => { 'name' => job_name, 'version' => '0+dev.1' },
  'properties' => properties
)

rendered = {}
errors = []
job_spec.fetch('templates').each do |template, destination|
  context = EvaluationContext.new(properties, spec)
  begin
    text = File.read(File.join(job_dir, 'templates', template))
    erb = ERB.new(text, trim_mode: '-')
    erb.filename = template
    rendered[destination] = erb.result(context.get_binding)
  rescue StandardError, ScriptError => e
    errors << "Error filling in template '#{template}' for '#{group_name}/0': #{e.message}"
  end
end

unless errors.empty?
  warn errors.join("\n")
  exit 1
end

rendered.each do |destination, text|
  path = File.join(out_dir, destination)
  FileUtils.mkdir_p(File.dirname(path))
  File.write(path, text)
  File.chmod(destination.start_with?('bin/') ? 0o755 : 0o644, path)
end
