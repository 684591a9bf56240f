# bench/programs/workload.rb: the ruby workload of bench/run.
# What a Ruby web back end does per request, many times over: build records
# as hashes of strings, render them to JSON and parse them back, group and
# sort, build strings by appending, and let the GC free it all.  Ruby's heap
# pages, strings, arrays and hashes beyond a few words all come from malloc.
# Run: ruby workload.rb [rounds]; prints a "check:" line fixed for a given
# number of rounds.
require 'json'

rounds = (ARGV[0] || 40).to_i
total = 0
digest = 0
rounds.times do |r|
  records = (0...4000).map do |i|
    { 'id' => i, 'name' => "user#{(i * 7919) % 10007}", 'tags' => Array.new(i % 7) { |k| "t#{k * i % 13}" },
      'score' => (i * 104729) % 1000, 'bio' => 'x' * (i % 300) }
  end
  parsed = JSON.parse(JSON.generate(records))
  raise 'JSON round trip lost records' unless parsed.size == records.size && parsed[1234]['name'] == records[1234]['name']
  groups = parsed.group_by { |h| h['score'] % 17 }
  top = groups.map { |k, v| [k, v.sort_by { |h| [-h['score'], h['id']] }.first(5).map { |h| h['id'] }] }.sort
  s = +''
  top.each { |k, ids| s << k.to_s << ':' << ids.join(',') << ';' }
  counts = Hash.new(0)
  parsed.each { |h| h['tags'].each { |t| counts[t] += 1 } }
  total += counts.values.sum + s.size
  digest = (digest * 31 + s.bytes.sum + counts.size) % 1_000_000_007
end
puts "check: #{total} #{digest}"
