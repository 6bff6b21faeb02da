'use strict'
// Runs one kafkajs operation against a broker for the Python compatibility tests (test_kafkajs.py).
//
//   node driver.js <operation>   with a JSON request on stdin: { "brokers": [...], ...arguments }
//
// The JSON result goes to stdout; kafkajs logs go to stderr so stdout stays parseable. Keys, values and
// header values travel base64-encoded because the tests send arbitrary bytes.

const { Kafka, CompressionTypes, ConfigResourceTypes, Partitioners, logLevel } = require('kafkajs')
const { registerCodecs } = require('./codecs')

registerCodecs()

const REQUEST_TIMEOUT_MS = 30000

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD
}

const logToStderr = () => ({ namespace, label, log }) => {
  const { message, ...details } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(details)}\n`)
}

function kafkaClient (brokers, clientId = 'strom-compat') {
  return new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.WARN,
    logCreator: logToStderr,
    requestTimeout: REQUEST_TIMEOUT_MS
  })
}

async function withAdmin (request, action) {
  const admin = kafkaClient(request.brokers).admin()
  await admin.connect()
  try {
    return await action(admin)
  } finally {
    await admin.disconnect()
  }
}

const fromBase64 = text => Buffer.from(text, 'base64')
const toBase64 = buffer => (buffer === null ? null : buffer.toString('base64'))

function decodeMessage (message) {
  const decoded = {
    key: fromBase64(message.key),
    value: fromBase64(message.value),
    headers: Object.fromEntries(message.headers.map(([name, value]) => [name, fromBase64(value)]))
  }
  if (message.timestamp !== null) decoded.timestamp = String(message.timestamp)
  return decoded
}

function encodeRecord (partition, message) {
  const headers = Object.entries(message.headers || {}).flatMap(([name, values]) =>
    (Array.isArray(values) ? values : [values]).map(value => [name, toBase64(value)])
  )
  return {
    partition,
    offset: Number(message.offset),
    key: toBase64(message.key),
    value: toBase64(message.value),
    headers,
    timestamp: Number(message.timestamp)
  }
}

async function partitionMetadata (admin, topic) {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
  return topics[0].partitions
}

const operations = {
  async createTopic (request) {
    const created = await withAdmin(request, admin =>
      admin.createTopics({
        topics: [
          {
            topic: request.topic,
            numPartitions: request.partitions,
            replicationFactor: 1,
            configEntries: Object.entries(request.configs || {}).map(([name, value]) => ({ name, value }))
          }
        ],
        waitForLeaders: true,
        timeout: REQUEST_TIMEOUT_MS
      })
    )
    return { created }
  },

  async partitions (request) {
    const partitions = await withAdmin(request, admin => partitionMetadata(admin, request.topic))
    return partitions.map(partition => partition.partitionId).sort((a, b) => a - b)
  },

  async listTopics (request) {
    return withAdmin(request, admin => admin.listTopics())
  },

  async deleteTopic (request) {
    await withAdmin(request, admin => admin.deleteTopics({ topics: [request.topic], timeout: REQUEST_TIMEOUT_MS }))
    return {}
  },

  async describeConfigs (request) {
    const { resources } = await withAdmin(request, admin =>
      admin.describeConfigs({
        resources: [{ type: ConfigResourceTypes.TOPIC, name: request.topic }],
        includeSynonyms: false
      })
    )
    const [resource] = resources
    if (resource.errorCode !== 0) throw new Error(`DescribeConfigs error ${resource.errorCode}: ${resource.errorMessage}`)
    return Object.fromEntries(
      resource.configEntries.map(entry => [entry.configName, { value: entry.configValue, source: entry.configSource }])
    )
  },

  async alterConfigs (request) {
    await withAdmin(request, admin =>
      admin.alterConfigs({
        validateOnly: false,
        resources: [
          {
            type: ConfigResourceTypes.TOPIC,
            name: request.topic,
            configEntries: Object.entries(request.configs).map(([name, value]) => ({ name, value }))
          }
        ]
      })
    )
    return {}
  },

  async offsets (request) {
    const offsets = await withAdmin(request, admin => admin.fetchTopicOffsets(request.topic))
    return offsets
      .map(({ partition, low, high }) => ({ partition, low: Number(low), high: Number(high) }))
      .sort((a, b) => a.partition - b.partition)
  },

  async offsetsForTimes (request) {
    return withAdmin(request, async admin => {
      const answers = {}
      for (const timestamp of request.timestamps) {
        const offsets = await admin.fetchTopicOffsetsByTimestamp(request.topic, timestamp)
        answers[timestamp] = Object.fromEntries(offsets.map(({ partition, offset }) => [partition, Number(offset)]))
      }
      return answers
    })
  },

  // Sends all messages in one request and works out each message's offset: kafkajs puts the messages of
  // one partition into one batch, in the order given, so the n-th message of a partition sits at
  // baseOffset + n. The producer picks partitions with kafkajs's default (Java-compatible murmur2)
  // partitioner; running the same partitioner here tells which message went where.
  async produce (request) {
    const metadata = await withAdmin(request, admin => partitionMetadata(admin, request.topic))
    const choosePartition = Partitioners.DefaultPartitioner()
    const messages = request.messages.map(decodeMessage)
    if (request.partition !== undefined) messages.forEach(message => (message.partition = request.partition))
    const partitions = messages.map(message =>
      message.partition ?? choosePartition({ topic: request.topic, partitionMetadata: metadata, message })
    )
    const producer = kafkaClient(request.brokers).producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    let results
    try {
      results = await producer.send({
        topic: request.topic,
        messages,
        acks: -1,
        compression: COMPRESSION[request.compression || 'none'],
        timeout: REQUEST_TIMEOUT_MS
      })
    } finally {
      await producer.disconnect()
    }
    const nextOffset = new Map(results.map(result => [result.partition, Number(result.baseOffset)]))
    const deliveries = partitions.map(partition => {
      if (!nextOffset.has(partition)) throw new Error(`no produce result for partition ${partition}`)
      const offset = nextOffset.get(partition)
      nextOffset.set(partition, offset + 1)
      return { partition, offset }
    })
    return { deliveries }
  },

  // The way an e-commerce service publishes order events: one keyed JSON message per send, 10 s timeout.
  async publishOrders (request) {
    const kafka = new Kafka({
      clientId: 'ecommerce-server',
      brokers: request.brokers,
      logLevel: logLevel.WARN,
      logCreator: logToStderr
    })
    const producer = kafka.producer()
    await producer.connect()
    const acknowledged = []
    try {
      for (const order of request.orders) {
        const [result] = await producer.send({
          topic: request.topic,
          messages: [{ key: order.customerId, value: JSON.stringify(order) }],
          timeout: 10000
        })
        acknowledged.push({ partition: result.partition, offset: Number(result.baseOffset) })
      }
    } finally {
      await producer.disconnect()
    }
    return acknowledged
  },

  // The service's consumer: a group member with a 30 s session, 3 s heartbeats and a 60 s rebalance
  // timeout. It reads from the start of the topic so it finds the messages the test produced beforehand.
  async consumeInGroup (request) {
    const kafka = new Kafka({
      clientId: 'ecommerce-server',
      brokers: request.brokers,
      logLevel: logLevel.WARN,
      logCreator: logToStderr
    })
    const consumer = kafka.consumer({
      groupId: request.groupId,
      sessionTimeout: 30000,
      heartbeatInterval: 3000,
      rebalanceTimeout: 60000
    })
    const records = []
    await consumer.connect()
    try {
      await consumer.subscribe({ topics: [request.topic], fromBeginning: true })
      await new Promise((resolve, reject) => {
        const deadline = setTimeout(
          () => reject(new Error(`read ${records.length} of ${request.count} messages before giving up`)),
          request.giveUpAfterMs
        )
        const finish = outcome => {
          clearTimeout(deadline)
          outcome()
        }
        consumer.on(consumer.events.CRASH, event => finish(() => reject(event.payload.error)))
        consumer
          .run({
            eachMessage: async ({ partition, message }) => {
              records.push(encodeRecord(partition, message))
              if (records.length >= request.count) finish(resolve)
            }
          })
          .catch(error => finish(() => reject(error)))
      })
    } finally {
      await consumer.disconnect()
    }
    return { records }
  }
}

async function readStdin () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

async function main () {
  const name = process.argv[2]
  const operation = operations[name]
  if (!operation) {
    throw new Error(`unknown operation ${name}; expected one of ${Object.keys(operations).join(', ')}`)
  }
  const result = await operation(JSON.parse(await readStdin()))
  process.stdout.write(JSON.stringify(result))
}

// kafkajs can leave retry timers behind, so the process exits explicitly once the answer is written.
main().then(
  () => process.exit(0),
  error => {
    process.stderr.write(`${error.name}: ${error.message}\n${error.stack}\n`)
    process.exit(1)
  }
)
