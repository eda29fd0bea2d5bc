package embedded

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
)

// TestDisplayFieldsLiveInTheStore: memory keeps what ranking and filtering
// read; the text, media URL, preprocessing mode and thumbnail are read from
// the store for replies; a post's thumbnail is stored once for all its
// records, and goes with the post; this survives a reopen.
func TestDisplayFieldsLiveInTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ix.db")
	ix := openTest(t, path)
	ctx := context.Background()
	thumb := bytes.Repeat([]byte{0xff, 0xd8, 7}, 1200)
	base := domain.Record{PostID: "p1", Author: "ann", ModelVersion: "test@1", Labels: []string{"cat"},
		Text: "a cat on a mat", MediaURL: "https://example.com/c.jpg", Thumbnail: thumb, Preprocess: "fast"}
	var recs []domain.Record
	for i, m := range domain.Modalities {
		r := base
		r.Modality, r.PK, r.Vector = m, domain.PrimaryKey("p1", m), unit(uint64(i+1))
		if m == domain.ModalityText {
			r.Preprocess = ""
		}
		recs = append(recs, r)
	}
	if _, err := ix.Apply(ctx, []domain.Change{{PostID: "p1", Seq: 1, Records: recs}}); err != nil {
		t.Fatal(err)
	}
	check := func(ix *Index) {
		t.Helper()
		for _, s := range ix.segs {
			for _, r := range s.recs {
				if r.Text != "" || r.MediaURL != "" || r.Thumbnail != nil || r.Preprocess != "" {
					t.Errorf("%s: memory holds display fields %+v", r.PK, r)
				}
				if r.Author != "ann" || r.PostID != "p1" || len(r.Labels) != 1 {
					t.Errorf("%s: memory lost ranking/filter fields %+v", r.PK, r)
				}
			}
		}
		hits, err := ix.Search(ctx, domain.VectorQuery{Vector: unit(1), K: 3, Filter: domain.Filter{Authors: []string{"ann"}}})
		if err != nil || len(hits) != 3 {
			t.Fatalf("search: %d hits, %v", len(hits), err)
		}
		for _, h := range hits {
			if h.Text != base.Text || h.MediaURL != base.MediaURL || !bytes.Equal(h.Thumbnail, thumb) {
				t.Errorf("%s: hit text %q url %q thumbnail %d bytes", h.PK, h.Text, h.MediaURL, len(h.Thumbnail))
			}
		}
		got, err := ix.Get(ctx, []string{"p1#image", "p1#text"})
		if err != nil || len(got) != 2 || got[0].Preprocess != "fast" || got[1].Preprocess != "" || !bytes.Equal(got[1].Thumbnail, thumb) {
			t.Errorf("Get: %v %+v", err, got)
		}
		var stored, thumbs int
		ix.db.View(func(tx *bolt.Tx) error {
			tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
				stored += len(v)
				if bytes.Contains(v, []byte(`"thumbnail"`)) {
					t.Errorf("record %s stores its own thumbnail", k)
				}
				return nil
			})
			thumbs = tx.Bucket(bucketThumbs).Stats().KeyN
			return nil
		})
		if thumbs != 1 || stored > 3*(4*testDim+400) {
			t.Errorf("%d thumbnails stored, records take %d bytes; want 1 thumbnail and small records", thumbs, stored)
		}
	}
	check(ix)
	ix.Close()
	ix = openTest(t, path)
	check(ix)
	if _, err := ix.Apply(ctx, []domain.Change{{PostID: "p1", Seq: 2, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	ix.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketThumbs).Stats().KeyN; n != 0 {
			t.Errorf("%d thumbnails left after the post's delete", n)
		}
		return nil
	})
}
