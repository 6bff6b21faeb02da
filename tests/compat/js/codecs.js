'use strict'
// kafkajs ships only gzip; the other Kafka codecs are plugged in here from pure-JavaScript libraries so the
// tests install without native builds. Each codec turns a kafkajs encoder's buffer into a Kafka-framed
// compressed payload and back.

const { CompressionCodecs, CompressionTypes } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const { ZstdCodec } = require('zstd-codec')

const LZ4Codec = () => ({
  async compress (encoder) {
    return Buffer.from(lz4.compress(encoder.buffer))
  },
  async decompress (buffer) {
    return Buffer.from(lz4.decompress(buffer))
  }
})

// The zstd module is compiled WebAssembly that loads asynchronously, once.
const zstdReady = new Promise(resolve => ZstdCodec.run(resolve))

const ZstdCompressionCodec = () => ({
  async compress (encoder) {
    const zstd = await zstdReady
    return Buffer.from(new zstd.Simple().compress(encoder.buffer))
  },
  async decompress (buffer) {
    // Streaming decompression also accepts frames that do not declare their content size.
    const zstd = await zstdReady
    return Buffer.from(new zstd.Streaming().decompress(buffer))
  }
})

function registerCodecs () {
  CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
  CompressionCodecs[CompressionTypes.LZ4] = LZ4Codec
  CompressionCodecs[CompressionTypes.ZSTD] = ZstdCompressionCodec
}

module.exports = { registerCodecs }
