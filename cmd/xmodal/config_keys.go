package main

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// yamlKeyError turns a strict-decoding failure into one line naming the key by
// its full dotted path (`config milvus.adress (line 2): unknown key`), instead of
// yaml's multi-line report that names only the last segment. It returns nil when
// it finds no unknown key (the caller reports the original error then).
func yamlKeyError(b []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	return unknownKey(root.Content[0], reflect.TypeFor[Config](), "")
}

func unknownKey(n *yaml.Node, t reflect.Type, prefix string) error {
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Duration]() {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		f, ok := fieldByTag(t, k.Value)
		if !ok {
			var known []string
			for j := range t.NumField() {
				known = append(known, strings.Split(t.Field(j).Tag.Get("yaml"), ",")[0])
			}
			return fmt.Errorf("config %s (line %d): unknown key (known here: %s)", key, k.Line, strings.Join(known, ", "))
		}
		if err := unknownKey(v, f.Type, key); err != nil {
			return err
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
