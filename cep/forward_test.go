package cep

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

// keyPartition places every key where Sarama's hash partitioner (the API's producer, and kcat
// with topic.partitioner=fnv1a_random) does, whatever the sign of its hash.
func TestKeyPartitionIsSaramas(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hp := sarama.NewHashPartitioner("events")
	keys := []string{"", "alice", "bob", "zoë", "u12345", "pu-b", "kc-bad1", "user-77", "x"}
	for range 2000 {
		keys = append(keys, "u"+strconv.Itoa(rng.IntN(1<<30)))
	}
	for _, n := range []int32{1, 3, 4, 8, 12, 64} {
		for _, k := range keys {
			want, err := hp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(k)}, n)
			require.NoError(t, err)
			require.Equal(t, want, keyPartition(k, n), "key %q among %d partitions", k, n)
		}
	}
	// Observed with kcat -X topic.partitioner=fnv1a_random on 4 partitions.
	for k, want := range map[string]int32{"alice": 1, "bob": 0, "zoë": 0, "u12345": 3, "pu-b": 3, "kc-bad1": 0, "user-77": 1, "x": 1} {
		require.Equal(t, want, keyPartition(k, 4), "key %q", k)
	}
}
