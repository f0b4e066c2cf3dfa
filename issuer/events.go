package issuer

import "time"

// Subscribe delivers name's progress events until cancel is called. The
// channel is buffered; a subscriber that does not keep up misses progress
// events rather than stalling an order, but never the final StepDone (the
// issuer waits up to a second for room), which its waiting client needs.
func (i *Issuer) Subscribe(name string) (<-chan Event, func()) {
	ch := make(chan Event, 256)
	i.mu.Lock()
	id := i.next
	i.next++
	if i.subs[name] == nil {
		i.subs[name] = map[int]chan Event{}
	}
	i.subs[name][id] = ch
	i.mu.Unlock()
	return ch, func() {
		i.mu.Lock()
		delete(i.subs[name], id)
		if len(i.subs[name]) == 0 {
			delete(i.subs, name)
		}
		i.mu.Unlock()
	}
}

func (i *Issuer) publish(name string, ev Event) {
	ev.Cert = name
	// Send outside the lock: waiting for room must not stall claims.
	// Channels are never closed, so a subscriber cancelling meanwhile is
	// harmless.
	i.mu.Lock()
	chans := make([]chan Event, 0, len(i.subs[name]))
	for _, ch := range i.subs[name] {
		chans = append(chans, ch)
	}
	i.mu.Unlock()
	for _, ch := range chans {
		select {
		case ch <- ev:
			continue
		default:
		}
		if ev.Step == StepDone {
			t := time.NewTimer(time.Second)
			select {
			case ch <- ev:
			case <-t.C:
			}
			t.Stop()
		}
	}
}
