package cep

import (
	"strconv"

	"github.com/IBM/sarama"

	"github.com/omegareach/omega/event"
)

// The wire contract keys an event by its user (its item when it has none), and the stage keeps a
// user's pattern state on the partition the key hashes to: FNV-1a, as Sarama's default hash
// partitioner, the API's producer and librdkafka's fnv1a_random partitioner (kcat -X
// topic.partitioner=fnv1a_random) place it. A producer that partitions otherwise (librdkafka's
// default CRC32, the Java client's murmur2, a record without a key) would split one user's events
// over partitions, and a count or a sequence would miss them. So a live stage forwards a record
// it reads on another partition to its key's, keyed by the contract, and skips it where it is:
// the batch sends the forwards before it is durable (a replay sends them again, and an event seen
// twice changes nothing), and the key's partition processes the event in event time, within the
// allowed lateness, like any other.

// HeaderForwardedFrom marks a forwarded record with where it was first read (topic/partition/offset).
const HeaderForwardedFrom = "omega-forwarded-from"

// keyPartition is the partition the wire contract gives key among n (0 when n is unknown): the
// FNV-1a hash of its bytes as a signed 32-bit integer, modulo n, its absolute value.
func keyPartition(key string, n int32) int32 {
	if n <= 0 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	p := int32(h) % n
	if p < 0 {
		p = -p
	}
	return p
}

// forward is m sent to partition to of its topic, keyed as the contract says.
func (s *Stage) forward(m *sarama.ConsumerMessage, ev *event.Event, to int32) *sarama.ProducerMessage {
	s.cfg.Log.Debug("forwarding event to its key's partition", "partition", m.Partition, "offset", m.Offset, "to", to)
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if h != nil && string(h.Key) != HeaderForwardedFrom {
			headers = append(headers, *h)
		}
	}
	headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderForwardedFrom),
		Value: []byte(m.Topic + "/" + strconv.Itoa(int(m.Partition)) + "/" + strconv.FormatInt(m.Offset, 10))})
	return &sarama.ProducerMessage{Topic: m.Topic, Key: sarama.StringEncoder(ev.Key()), Value: sarama.ByteEncoder(m.Value),
		Headers: headers, Timestamp: m.Timestamp}
}
