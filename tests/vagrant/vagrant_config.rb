# Prints, as JSON, what Vagrant makes of the Vagrantfile in the current directory: every
# machine's box, hostname, networks, provider settings, provisioners and triggers, as loaded by
# Vagrant's own code (no provider has to be installed). Used by tests/vagrant/test_vagrant_config.py:
#   ruby tests/vagrant/vagrant_config.rb PROVIDER
gem "vagrant"
require "vagrant"
require "json"

JSON_TYPES = [String, Integer, Float, TrueClass, FalseClass, NilClass, Symbol, Array, Hash].freeze

# A config object's plain settings (instance variables holding JSON-friendly values).
def settings(object)
  object.instance_variables.each_with_object({}) do |name, out|
    value = object.instance_variable_get(name)
    out[name.to_s.delete_prefix("@")] = value if JSON_TYPES.any? { |type| value.is_a?(type) }
  end
end

provider = ARGV.fetch(0).to_sym
env = Vagrant::Environment.new(cwd: Dir.pwd)
machines = env.machine_names.map do |name|
  config = env.vagrantfile.machine_config(name, provider, env.boxes, nil, false)[:config]
  {
    name: name,
    box: config.vm.box,
    box_version: config.vm.box_version,
    hostname: config.vm.hostname,
    networks: config.vm.networks.map { |type, options| { type: type }.merge(options) },
    synced_folders: config.vm.synced_folders,
    providers: config.vm.__providers,
    provider: settings(config.vm.get_provider_config(provider)),
    provisioners: config.vm.provisioners.map { |p| { type: p.type }.merge(settings(p.config)) },
    triggers: config.trigger.after_triggers.map { |t| { command: t.command, info: t.info } },
  }
end
puts JSON.generate(machines)
