'use strict'
// Plays the kafkajs side of the transaction compatibility tests (test_transactions.py).
//
//   node transactions.js '{"brokers": [...]}'
//
// A long-lived helper rather than one process per operation: a test keeps producers (and their open
// transactions) alive across several steps, while other clients act in between. Each line on stdin is one
// command, { "op": <name>, ...arguments }; each gets exactly one JSON line on stdout, in order:
// { "ok": true, "result": ... } or { "ok": false, "error": { "type", "name", "message" } }, where "type" is
// the Kafka error name when the broker answered with an error code. Logs go to stderr. The helper
// disconnects everything and exits when stdin ends.

const readline = require('readline')
const { Kafka, logLevel } = require('kafkajs')

const REQUEST_TIMEOUT_MS = 30000
// How long a read waits for the end marker on every partition before giving up (not a performance target).
const READ_GIVE_UP_MS = 60000
const FETCH_MAX_WAIT_MS = 100

const logToStderr = () => ({ namespace, label, log }) => {
  const { message, ...details } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(details)}\n`)
}

// One producer: its kafkajs object and, between begin and commit/abort, its open transaction.
class ProducerSlot {
  constructor (producer, transactional) {
    this.producer = producer
    this.transactional = transactional
    this.transaction = null
  }
}

// Walks kafkajs's error wrappers (retries exhausted, causes) down to the broker's error name if there is one.
function describeError (error) {
  let current = error
  while (current && !current.type && (current.originalError || current.cause)) {
    current = current.originalError || current.cause
  }
  const found = current || error
  return { type: found.type || null, name: found.name || error.name, message: String(error.message || error) }
}

class Helper {
  constructor (brokers) {
    this.brokers = brokers
    this.kafka = new Kafka({
      clientId: 'strom-compat-transactions',
      brokers,
      logLevel: logLevel.WARN,
      logCreator: logToStderr,
      requestTimeout: REQUEST_TIMEOUT_MS
    })
    this.producers = new Map()
  }

  slot (handle) {
    const slot = this.producers.get(handle)
    if (!slot) throw new Error(`no producer ${handle}`)
    return slot
  }

  // A transactional producer has done InitProducerId when this returns: kafkajs initialises on the first
  // transaction(), and ending that empty transaction sends nothing to the broker.
  async producer ({ handle, transactionalId, transactionTimeoutMs }) {
    const transactional = transactionalId !== null
    const producer = transactional
      ? this.kafka.producer({
        transactionalId,
        transactionTimeout: transactionTimeoutMs,
        idempotent: true,
        maxInFlightRequests: 1
      })
      : this.kafka.producer()
    await producer.connect()
    this.producers.set(handle, new ProducerSlot(producer, transactional))
    if (transactional) {
      const initial = await producer.transaction()
      await initial.abort()
    }
    return null
  }

  async begin ({ handle }) {
    const slot = this.slot(handle)
    slot.transaction = await slot.producer.transaction()
    return null
  }

  async send ({ handle, topic, partition, values }) {
    const slot = this.slot(handle)
    const sender = slot.transactional ? slot.transaction : slot.producer
    if (!sender) throw new Error(`producer ${handle} has no open transaction`)
    await sender.send({
      topic,
      acks: -1,
      timeout: REQUEST_TIMEOUT_MS,
      messages: values.map(value => ({ value, partition }))
    })
    return null
  }

  async sendOffsets ({ handle, group, topic, offsets }) {
    const partitions = Object.entries(offsets).map(([partition, offset]) => ({
      partition: Number(partition),
      offset: String(offset)
    }))
    await this.slot(handle).transaction.sendOffsets({ consumerGroupId: group, topics: [{ topic, partitions }] })
    return null
  }

  async commit ({ handle }) {
    const slot = this.slot(handle)
    const transaction = slot.transaction
    slot.transaction = null
    await transaction.commit()
    return null
  }

  async abort ({ handle }) {
    const slot = this.slot(handle)
    const transaction = slot.transaction
    slot.transaction = null
    await transaction.abort()
    return null
  }

  async close ({ handle }) {
    const slot = this.slot(handle)
    this.producers.delete(handle)
    await slot.producer.disconnect()
    return null
  }

  // Reads every partition from the beginning until its end marker, as a member of a group of its own
  // (kafkajs consumes only through groups). Answers each partition's values before the marker, in offset order.
  async read ({ topic, partitions, readCommitted, endMarker, group }) {
    const consumer = this.kafka.consumer({
      groupId: group,
      readUncommitted: !readCommitted,
      maxWaitTimeInMs: FETCH_MAX_WAIT_MS
    })
    const values = Object.fromEntries([...Array(partitions).keys()].map(partition => [partition, []]))
    const ended = new Set()
    await consumer.connect()
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await new Promise((resolve, reject) => {
        const giveUp = setTimeout(
          () => reject(new Error(`no end marker after ${READ_GIVE_UP_MS} ms; read ${JSON.stringify(values)}`)),
          READ_GIVE_UP_MS
        )
        const finish = outcome => {
          clearTimeout(giveUp)
          outcome()
        }
        consumer.on(consumer.events.CRASH, event => finish(() => reject(event.payload.error)))
        consumer
          .run({
            autoCommit: false,
            eachMessage: async ({ partition, message }) => {
              if (ended.has(partition)) return
              const value = message.value.toString()
              if (value === endMarker) {
                ended.add(partition)
                if (ended.size === partitions) finish(resolve)
              } else {
                values[partition].push(value)
              }
            }
          })
          .catch(error => finish(() => reject(error)))
      })
    } finally {
      await consumer.disconnect()
    }
    return values
  }

  // The group's committed offsets for the topic's partitions, leaving out partitions without one.
  async committed ({ group, topic }) {
    const admin = this.kafka.admin()
    await admin.connect()
    try {
      const [answer] = await admin.fetchOffsets({ groupId: group, topics: [topic] })
      return Object.fromEntries(
        answer.partitions
          .filter(({ offset }) => Number(offset) >= 0)
          .map(({ partition, offset }) => [partition, Number(offset)])
      )
    } finally {
      await admin.disconnect()
    }
  }

  async shutdown () {
    for (const slot of this.producers.values()) await slot.producer.disconnect()
    this.producers.clear()
  }
}

const OPERATIONS = ['producer', 'begin', 'send', 'sendOffsets', 'commit', 'abort', 'close', 'read', 'committed']

async function main () {
  const { brokers } = JSON.parse(process.argv[2])
  const helper = new Helper(brokers)
  const input = readline.createInterface({ input: process.stdin })
  for await (const line of input) {
    if (!line.trim()) continue
    const { op, ...args } = JSON.parse(line)
    let answer
    try {
      if (!OPERATIONS.includes(op)) throw new Error(`unknown op ${op}; expected one of ${OPERATIONS.join(', ')}`)
      answer = { ok: true, result: await helper[op](args) }
    } catch (error) {
      answer = { ok: false, error: describeError(error) }
    }
    process.stdout.write(JSON.stringify(answer) + '\n')
  }
  await helper.shutdown()
}

// kafkajs can leave retry timers behind, so the process exits explicitly once stdin has ended.
main().then(
  () => process.exit(0),
  error => {
    process.stderr.write(`${error.name}: ${error.message}\n${error.stack}\n`)
    process.exit(1)
  }
)
