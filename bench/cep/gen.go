package main

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/omegareach/omega/event"
)

// generator makes a realistic mix: mostly views, some favourites, carts, chats and orders, and rare
// price drops; users and items drawn at random (uniformly).
type generator struct {
	users, items int
	rng          *rand.Rand
	seq          int
}

func newGenerator(users, items int, seed uint64) *generator {
	return &generator{users: users, items: items, rng: rand.New(rand.NewPCG(seed, 2))}
}

func (g *generator) next(ts time.Time) event.Event {
	g.seq++
	u := "u" + strconv.Itoa(g.rng.IntN(g.users))
	it := "i" + strconv.Itoa(g.rng.IntN(g.items))
	e := event.Event{EventID: "e" + strconv.Itoa(g.seq) + "-" + strconv.Itoa(g.rng.IntN(1<<30)), UserID: u, ItemID: it, TS: ts}
	switch x := g.rng.IntN(100); {
	case x < 60:
		e.Type = "view"
	case x < 70:
		e.Type = "favorite"
	case x < 80:
		e.Type = "cart_add"
		e.Attrs = map[string]any{"price": float64(g.rng.IntN(1000))}
	case x < 85:
		e.Type = "chat_started"
	case x < 90:
		e.Type = "order_paid"
		e.Attrs = map[string]any{"price": float64(g.rng.IntN(1000))}
	case x < 91:
		e.Type, e.UserID = "price_drop", ""
	default:
		e.Type = "push_open"
	}
	return e
}

// stream is what was produced: the mix and the distinct users.
type stream struct {
	topic   string
	n       int
	rate    float64 // events/s produced
	byType  map[string]int
	users   int
	bytes   int64
	firstTS time.Time
	lastTS  time.Time
}

// produce writes n events to topic, the i-th stamped ts(i), keyed as the wire contract says.
func produce(brokers []string, topic string, n int, g *generator, ts func(i int) time.Time) stream {
	sc := saramaConfig()
	sc.Producer.Return.Successes = true
	p, err := sarama.NewAsyncProducer(brokers, sc)
	must(err)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range p.Successes() {
		}
	}()
	go func() {
		defer wg.Done()
		for err := range p.Errors() {
			must(err)
		}
	}()
	s := stream{topic: topic, n: n, byType: map[string]int{}}
	users := map[string]struct{}{}
	start := time.Now()
	for i := range n {
		e := g.next(ts(i))
		v, _ := e.Encode()
		s.byType[e.Type]++
		s.bytes += int64(len(v))
		if e.UserID != "" {
			users[e.UserID] = struct{}{}
		}
		if i == 0 {
			s.firstTS = e.TS
		}
		s.lastTS = e.TS
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.Key()), Value: sarama.ByteEncoder(v)}
		if i > 0 && i%100_000 == 0 {
			progress("  produced %d", i)
		}
	}
	p.AsyncClose()
	wg.Wait()
	s.rate = float64(n) / time.Since(start).Seconds()
	s.users = len(users)
	return s
}

// highWater is each partition's end offset; their sum is the number of records.
func highWater(brokers []string, topic string) (map[int32]int64, int64) {
	client, err := sarama.NewClient(brokers, saramaConfig())
	must(err)
	defer client.Close()
	parts, err := client.Partitions(topic)
	must(err)
	hw := map[int32]int64{}
	var total int64
	for _, p := range parts {
		hw[p], err = client.GetOffset(topic, p, sarama.OffsetNewest)
		must(err)
		total += hw[p]
	}
	return hw, total
}
