#!/usr/bin/env ruby
# Renders a BOSH job's templates as the director does, for the tests (the bosh CLI and a
# director are not needed).
#
# usage: ruby tests/bosh/render.rb JOB_DIR MANIFEST OUT_DIR [--ops-file FILE]... [--provider JOB_DIR]...
#
# MANIFEST is a deployment manifest, v2 (the instance group holding the job gives its
# properties: the job's own, else the instance group's, else the global ones) or v1 (a
# `jobs` entry whose `templates` name the job; its properties, else the global ones), as
# the director does, or a bare mapping of properties (deployment name "test-deployment").
# Each --ops-file is applied to the manifest first, as `bosh deploy -o` does (`replace`
# and `remove` operations; paths of mapping keys and `name=` selectors, `?` for a key
# that may be absent). As the director: only properties declared in the job's spec are
# seen, each with the manifest's value or else the spec's default; `p(name)` raises for a
# property with neither, `p(name, default)` and `if_p` do not; templates (and `monit`)
# use ERB with trim mode "-" and see `spec` (deployment, name, index, id, az, address, ip,
# bootstrap, networks, job) and `link(name)`/`if_link(name)` for the links the job
# consumes, provided by the --provider jobs of the same instance group (their properties
# resolved the same way; the instances are this one). Every template is rendered before
# any file is written, so a failure writes nothing; it prints the director's "Error
# filling in template" line(s) and exits 1.

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

  def initialize(properties, spec, links = {})
    @properties = properties
    @spec = spec
    @links = links
  end

  def link(name)
    @links.fetch(name) { raise UnknownProperty, "Can't find link '#{name}'" }
  end

  def if_link(name)
    return ActiveElse.new(self) unless @links.key?(name)
    yield @links[name]
    InactiveElse.new
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

# What a consumer sees of a link: the provider's listed properties and its instances.
class Link
  attr_reader :instances, :address

  def initialize(properties, instances, address)
    @properties = properties
    @instances = instances
    @address = address
  end

  def p(*args)
    names = Array(args[0])
    names.each do |name|
      value = lookup(@properties, name)
      return value unless value.nil?
    end
    return args[1] if args.length == 2
    raise EvaluationContext::UnknownProperty, "Can't find link property '#{names.join("', or '")}'"
  end

  def if_p(*names)
    values = names.map do |name|
      value = lookup(@properties, name)
      return EvaluationContext::ActiveElse.new(self) if value.nil?
      value
    end
    yield(*values)
    EvaluationContext::InactiveElse.new
  end
end

# Applies one ops file's operations to the manifest, as the bosh CLI does.
def apply_ops(manifest, ops)
  ops.each do |op|
    tokens = op.fetch('path').sub(%r{\A/}, '').split('/')
    last = tokens.pop
    parent = tokens.reduce(manifest) { |node, token| step(node, token, op['type'] == 'replace') }
    key, optional = last.end_with?('?') ? [last.chomp('?'), true] : [last, false]
    case op.fetch('type')
    when 'replace'
      if parent.is_a?(Array)
        index = selector_index(parent, key)
        index.nil? ? parent << op['value'] : parent[index] = op['value']
      else
        abort "ops: #{op['path']}: #{key} is missing" unless optional || parent.key?(key)
        parent[key] = op['value']
      end
    when 'remove'
      parent.is_a?(Array) ? parent.delete_at(selector_index(parent, key)) : parent.delete(key)
    else
      abort "ops: unsupported type #{op['type']}"
    end
  end
  manifest
end

def step(node, token, create)
  key, optional = token.end_with?('?') ? [token.chomp('?'), true] : [token, false]
  if node.is_a?(Array)
    index = selector_index(node, key)
    abort "ops: no element #{key}" if index.nil?
    return node[index]
  end
  abort "ops: #{key} is missing" unless node.key?(key) || (optional && create)
  node[key] ||= {}
end

def selector_index(array, key)
  return Integer(key) if key =~ /\A\d+\z/
  field, value = key.split('=', 2)
  array.index { |item| item.is_a?(Hash) && item[field] == value }
end

def to_struct(value)
  case value
  when Hash then OpenStruct.new(value.transform_values { |v| to_struct(v) })
  when Array then value.map { |v| to_struct(v) }
  else value
  end
end

job_dir, manifest_path, out_dir, *options = ARGV
unless job_dir && manifest_path && out_dir
  warn 'usage: ruby tests/bosh/render.rb JOB_DIR MANIFEST OUT_DIR [--ops-file FILE]... [--provider JOB_DIR]...'
  exit 2
end
ops_files = []
provider_dirs = []
until options.empty?
  flag, value = options.shift(2)
  case flag
  when '--ops-file' then ops_files << value
  when '--provider' then provider_dirs << value
  else abort "unknown option #{flag}"
  end
end

manifest = YAML.safe_load(File.read(manifest_path)) || {}
ops_files.each { |file| manifest = apply_ops(manifest, YAML.safe_load(File.read(file)) || []) }

# The properties the manifest gives a job, the deployment and instance group names.
def placement(manifest, job_name, manifest_path)
  return ['test-deployment', 'test-group', manifest] unless manifest.is_a?(Hash)
  deployment = manifest.fetch('name', 'test-deployment')
  if manifest.key?('instance_groups')
    group = manifest['instance_groups'].find do |ig|
      (ig['jobs'] || []).any? { |job| job['name'] == job_name }
    end
    abort "#{manifest_path}: no instance group has the job #{job_name}" unless group
    job = group['jobs'].find { |j| j['name'] == job_name }
    given = job['properties'] || group['properties'] || manifest['properties'] || {}
    return [deployment, group['name'], given]
  end
  if manifest.key?('jobs') && manifest['jobs'].is_a?(Array)
    # A v1 manifest: the job is one of a `jobs` entry's templates.
    group = manifest['jobs'].find do |entry|
      (entry['templates'] || entry['jobs'] || []).any? { |t| t['name'] == job_name }
    end
    abort "#{manifest_path}: no job has the template #{job_name}" unless group
    return [deployment, group['name'], group['properties'] || manifest['properties'] || {}]
  end
  ['test-deployment', 'test-group', manifest]
end

job_spec = YAML.safe_load(File.read(File.join(job_dir, 'spec')))
job_name = job_spec.fetch('name')
deployment, group_name, given = placement(manifest, job_name, manifest_path)

properties = resolve_properties(job_spec['properties'], given)
instance = {
  'name' => group_name,
  'id' => 'b02f4682-6d9e-4c3b-a8d4-7f3c2b1e9a50',
  'index' => 0,
  'az' => 'z1',
  'address' => '10.0.16.5',
  'bootstrap' => true,
}
spec = to_struct(
  'deployment' => deployment,
  'name' => group_name,
  'index' => 0,
  'id' => instance['id'],
  'az' => 'z1',
  'address' => '10.0.16.5',
  'ip' => '10.0.16.5',
  'bootstrap' => true,
  'networks' => { 'default' => { 'ip' => '10.0.16.5', 'default' => %w(dns gateway) } },
  'job' => { 'name' => job_name },
  'release' => { 'name' => job_name, 'version' => '0+dev.1' },
  'properties' => properties
)

# The links this job consumes, from the providers of the same instance group: each
# provided link's listed properties (resolved as the provider's own) and this instance.
links = {}
(job_spec['consumes'] || []).each do |consumed|
  provider_dirs.each do |dir|
    provider_spec = YAML.safe_load(File.read(File.join(dir, 'spec')))
    provided = (provider_spec['provides'] || []).find { |l| l['type'] == consumed['type'] }
    next unless provided
    _, _, provider_given = placement(manifest, provider_spec.fetch('name'), manifest_path)
    provider_properties = resolve_properties(provider_spec['properties'], provider_given)
    listed = {}
    (provided['properties'] || []).each do |name|
      value = lookup(provider_properties, name)
      path = name.split('.')
      leaf = path[0..-2].reduce(listed) { |hash, key| hash[key] ||= {} }
      leaf[path.last] = value
    end
    links[consumed.fetch('name')] = Link.new(listed, [to_struct(instance)], "#{group_name}.default.#{deployment}.bosh")
  end
end

rendered = {}
errors = []
templates = job_spec.fetch('templates').to_a
templates << %w(monit monit) if File.exist?(File.join(job_dir, 'monit'))
templates.each do |template, destination|
  context = EvaluationContext.new(properties, spec, links)
  begin
    path = template == 'monit' ? File.join(job_dir, 'monit') : File.join(job_dir, 'templates', template)
    erb = ERB.new(File.read(path), trim_mode: '-')
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
