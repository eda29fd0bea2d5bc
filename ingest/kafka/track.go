package kafka

import (
	"encoding/json"
	"fmt"
	"sort"
)

// tracker holds the offsets of one partition handed out in one generation, in
// ascending order, with whether each was acknowledged. The safe commit point is
// the lowest unacknowledged offset, or one past the last handed out when all are.
type tracker struct {
	offs  []int64
	acked []bool
	head  int   // entries before head are acknowledged and dropped
	next  int64 // last handed-out offset + 1; -1 before the first
	open  int   // unacknowledged entries
}

func newTracker() tracker { return tracker{next: -1} }

// add records a handed-out offset; offsets must ascend, and it reports false
// (recording nothing) for one that does not.
func (t *tracker) add(off int64) bool {
	if t.next >= 0 && off < t.next {
		return false
	}
	t.offs = append(t.offs, off)
	t.acked = append(t.acked, false)
	t.next = off + 1
	t.open++
	return true
}

// ack marks off done; it reports whether off was outstanding.
func (t *tracker) ack(off int64) bool {
	live := t.offs[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i] >= off })
	if i == len(live) || live[i] != off || t.acked[t.head+i] {
		return false
	}
	t.acked[t.head+i] = true
	t.open--
	return true
}

// safe returns the offset that may be committed (everything below it is
// acknowledged), or -1 when nothing was handed out. It drops the acknowledged
// prefix.
func (t *tracker) safe() int64 {
	for t.head < len(t.offs) && t.acked[t.head] {
		t.head++
	}
	if t.head > 1024 && t.head > len(t.offs)/2 {
		t.offs = append(t.offs[:0:0], t.offs[t.head:]...)
		t.acked = append(t.acked[:0:0], t.acked[t.head:]...)
		t.head = 0
	}
	if t.head < len(t.offs) {
		return t.offs[t.head]
	}
	return t.next
}

// outstanding is the number of handed-out offsets not yet acknowledged.
func (t *tracker) outstanding() int { return t.open }

// span is an inclusive range of offsets of one partition handed out once, in one
// generation of some member.
type span struct{ From, To int64 }

// deliveries is the value stored in the attempts table under "topic/partition":
// the spans handed out since the committed offset, one per generation that
// handed anything out. The attempt of an offset is 1 + the number of spans of
// earlier generations that hold it.
type deliveries struct {
	V     int        `json:"v"`
	Spans [][2]int64 `json:"spans"`
}

// maxSpans bounds the history of one partition: a partition that made no progress
// through this many generations has long been dead-lettered as poison.
const maxSpans = 64

func encodeSpans(spans []span) []byte {
	d := deliveries{V: 1, Spans: make([][2]int64, len(spans))}
	for i, s := range spans {
		d.Spans[i] = [2]int64{s.From, s.To}
	}
	b, _ := json.Marshal(d)
	return b
}

func decodeSpans(b []byte) ([]span, error) {
	var d deliveries
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	if d.V != 1 {
		return nil, fmt.Errorf("unknown version %d", d.V)
	}
	out := make([]span, 0, len(d.Spans))
	for _, s := range d.Spans {
		if s[0] >= 0 && s[1] >= s[0] {
			out = append(out, span{s[0], s[1]})
		}
	}
	return out, nil
}

// prune drops spans wholly below committed (those offsets are done) and keeps
// the newest maxSpans.
func prune(spans []span, committed int64) []span {
	out := spans[:0:0]
	for _, s := range spans {
		if committed >= 0 && s.To < committed {
			continue
		}
		if committed > s.From {
			s.From = committed
		}
		out = append(out, s)
	}
	if len(out) > maxSpans {
		out = out[len(out)-maxSpans:]
	}
	return out
}

// attemptOf is the delivery number of off given the spans of earlier generations.
func attemptOf(prior []span, off int64) int {
	n := 1
	for _, s := range prior {
		if s.From <= off && off <= s.To {
			n++
		}
	}
	return n
}
