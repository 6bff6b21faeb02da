'use strict'
// One kafkajs consumer-group member for the group compatibility tests (test_groups_kafkajs.py).
//
//   node group_member.js '<MemberConfig JSON>'
//
// Speaks the protocol tests/compat/group_scenario.py describes: JSON lines on stdout (assigned, rebalancing,
// record, committed, commit_failed, error, closed), and it leaves the group and exits when stdin says
// "close" or ends. kafkajs has no revoke callback: it reports "rebalancing" when a rebalance starts and the
// whole new assignment when it has joined again. It has no static membership and no cooperative assignor.

const readline = require('readline')
const { Kafka, PartitionAssigners, logLevel } = require('kafkajs')

// kafkajs waits this long for records in a fetch; it heartbeats between fetches, so keep it well under
// the session timeout.
const MAX_WAIT_MS = 500
const ASSIGNERS = { roundrobin: PartitionAssigners.roundRobin }

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

const logToStderr = () => ({ namespace, label, log }) => {
  const { message, ...details } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(details)}\n`)
}

function nextCommit (config, committed, partition, offset) {
  if (!config.commit_each) return null
  let target = offset + 1
  if (config.commit_limit !== null) target = Math.min(target, config.commit_limit)
  return (committed.get(partition) ?? -1) >= target ? null : target
}

async function main () {
  const config = JSON.parse(process.argv[2])
  if (config.group_instance_id !== null) throw new Error('kafkajs has no static membership (group.instance.id)')
  const assigner = ASSIGNERS[config.assignor]
  if (!assigner) throw new Error(`kafkajs has no ${config.assignor} assignor`)

  const kafka = new Kafka({
    clientId: config.client_id,
    brokers: [config.bootstrap],
    logLevel: logLevel.WARN,
    logCreator: logToStderr
  })
  const consumer = kafka.consumer({
    groupId: config.group_id,
    sessionTimeout: config.session_timeout_ms,
    heartbeatInterval: config.heartbeat_interval_ms,
    maxWaitTimeInMs: MAX_WAIT_MS,
    partitionAssigners: [assigner]
  })
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const assignment = (payload.memberAssignment[config.topic] || []).slice().sort((a, b) => a - b)
    emit('assigned', { partitions: assignment, assignment, generation: null })
  })
  consumer.on(consumer.events.REBALANCING, () => emit('rebalancing'))
  consumer.on(consumer.events.CRASH, ({ payload }) => emit('error', { message: String(payload.error) }))

  const committed = new Map()
  await consumer.connect()
  await consumer.subscribe({ topics: [config.topic], fromBeginning: config.auto_offset_reset === 'earliest' })
  await consumer.run({
    autoCommit: config.enable_auto_commit,
    autoCommitInterval: config.auto_commit_interval_ms,
    eachMessage: async ({ partition, message }) => {
      const offset = Number(message.offset)
      emit('record', { partition, offset, value: message.value === null ? '' : message.value.toString() })
      const target = nextCommit(config, committed, partition, offset)
      if (target === null) return
      try {
        await consumer.commitOffsets([{ topic: config.topic, partition, offset: String(target) }])
        committed.set(partition, target)
        emit('committed', { partition, offset: target })
      } catch (error) {
        emit('commit_failed', { partition, offset: target, error: String(error) })
      }
    }
  })

  const input = readline.createInterface({ input: process.stdin })
  await new Promise(resolve => {
    input.on('line', line => { if (line.trim() === 'close') resolve() })
    input.on('close', resolve)
  })
  await consumer.disconnect()
  emit('closed')
}

// kafkajs can leave retry timers behind, so the process exits explicitly once it has left the group.
main().then(
  () => process.exit(0),
  error => {
    process.stderr.write(`${error.name}: ${error.message}\n${error.stack}\n`)
    process.exit(1)
  }
)
