package clusters

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Update runs fn in a Txn inside one bbolt update transaction of db and
// commits both, or aborts both.
func (s *Store) Update(db *bolt.DB, fn func(*Txn) error) error {
	var txn *Txn
	err := db.Update(func(tx *bolt.Tx) error {
		txn = s.Begin(tx)
		return fn(txn)
	})
	if txn == nil {
		return err
	}
	if err != nil {
		txn.Abort()
		return err
	}
	txn.Commit()
	return nil
}

// Check verifies the store against tx: every member row has its set key and
// its cluster's row, every row's size counts its members, the
// representative is the earliest member, and memory holds what the file
// holds. It returns the first inconsistency.
func (s *Store) Check(tx *bolt.Tx) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sizes := map[uint64]int{}
	first := map[uint64]entry{}
	n := 0
	err := tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
		m, err := decodeMember(v)
		if err != nil {
			return err
		}
		n++
		post := string(k)
		if tx.Bucket(bucketSets).Get(setKey(m.Cluster, m.At, post)) == nil {
			return fmt.Errorf("member %q has no set key in cluster %d", post, m.Cluster)
		}
		if mm, ok := s.members[post]; !ok || mm.Cluster != m.Cluster || mm.ID != m.ID {
			return fmt.Errorf("member %q: memory %+v, file %+v", post, mm, m)
		}
		sizes[m.Cluster]++
		if f, ok := first[m.Cluster]; !ok || m.At < f.at || (m.At == f.at && post < f.post) {
			first[m.Cluster] = entry{post: post, at: m.At}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != len(s.members) {
		return fmt.Errorf("%d members in memory, %d in the file", len(s.members), n)
	}
	sets := 0
	if err := tx.Bucket(bucketSets).ForEach(func(k, _ []byte) error { sets++; return nil }); err != nil {
		return err
	}
	if sets != n {
		return fmt.Errorf("%d set keys for %d members", sets, n)
	}
	infos := 0
	err = tx.Bucket(bucketInfos).ForEach(func(k, v []byte) error {
		in, err := decodeInfo(v)
		if err != nil {
			return err
		}
		infos++
		id := binary.BigEndian.Uint64(k)
		if sizes[id] != in.Size {
			return fmt.Errorf("cluster %d: size %d, %d members", id, in.Size, sizes[id])
		}
		if f := first[id]; f.post != in.Rep || f.at != in.First {
			return fmt.Errorf("cluster %d: representative %q at %d, earliest member %q at %d", id, in.Rep, in.First, f.post, f.at)
		}
		if mi, ok := s.infos[id]; !ok || mi.Size != in.Size || mi.Rep != in.Rep {
			return fmt.Errorf("cluster %d: memory %+v, file %+v", id, mi, in)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if infos != len(sizes) || infos != len(s.infos) {
		return fmt.Errorf("%d cluster rows, %d clusters with members, %d in memory", infos, len(sizes), len(s.infos))
	}
	if s.opt.Linker.Len() != n {
		return fmt.Errorf("the linker holds %d members, the store %d", s.opt.Linker.Len(), n)
	}
	return nil
}
