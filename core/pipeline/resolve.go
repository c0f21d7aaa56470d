package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// finish computes the run's canonical JSON, hash and flat params.
func (r *Run) finish() error {
	js, err := json.Marshal(r.Config)
	if err != nil {
		return fmt.Errorf("run %s: marshal config: %w", r.Name, err)
	}
	// Re-encode through a generic value: every object's keys come out
	// sorted, independent of struct field order.
	var v any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("run %s: canonicalize config: %w", r.Name, err)
	}
	if r.JSON, err = json.Marshal(v); err != nil {
		return fmt.Errorf("run %s: canonicalize config: %w", r.Name, err)
	}
	sum := sha256.Sum256(r.JSON)
	r.Hash = hex.EncodeToString(sum[:])
	r.Params = map[string]any{}
	if err := flattenValue(r.Params, "", reflect.ValueOf(r.Config)); err != nil {
		return fmt.Errorf("run %s: flatten config: %w", r.Name, err)
	}
	if r.Matrix == nil {
		r.Matrix = map[string]any{}
	}
	return nil
}

// flattenValue stores v's leaves under dotted keys with the type its Go
// field declares: integers as int64, floats as float64 (so a param keeps
// its type across runs whatever its value), bools and strings as such.
// Structs use their JSON names; list elements that are objects get their
// index as a key part ("evaluations.0.k"); lists of scalars are stored as
// their JSON text; plugin configurations are flattened from their cty
// value (numbers are float64: cty has one number type).
func flattenValue(dst map[string]any, prefix string, v reflect.Value) error {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch x := v.Interface().(type) {
	case Plugin:
		dst[join("name")] = x.Name
		return flattenCty(dst, join("config"), x.Config)
	case Analyzer:
		dst[join("name")] = x.Name
		dst[join("every")] = int64(x.Every)
		return flattenCty(dst, join("config"), x.Config)
	case Step:
		dst[join("op")] = x.Op
		keys := make([]string, 0, len(x.Params))
		for k := range x.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := flattenValue(dst, join("params."+k), reflect.ValueOf(x.Params[k])); err != nil {
				return err
			}
		}
		return nil
	case hcl.Range:
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if strings.Contains(opts, "omitempty") && v.Field(i).IsZero() {
				continue
			}
			if err := flattenValue(dst, join(name), v.Field(i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		keys := v.MapKeys()
		for _, k := range keys {
			if err := flattenValue(dst, join(k.String()), v.MapIndex(k)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		ek := v.Type().Elem().Kind()
		if ek == reflect.Struct || ek == reflect.Map || ek == reflect.Interface {
			for i := range v.Len() {
				if err := flattenValue(dst, join(strconv.Itoa(i)), v.Index(i)); err != nil {
					return err
				}
			}
			return nil
		}
		js, err := json.Marshal(v.Interface())
		if err != nil {
			return err
		}
		dst[prefix] = string(js)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		dst[prefix] = v.Int()
	case reflect.Float32, reflect.Float64:
		dst[prefix] = v.Float()
	case reflect.Bool:
		dst[prefix] = v.Bool()
	case reflect.String:
		dst[prefix] = v.String()
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return flattenValue(dst, prefix, v.Elem())
	default:
		return fmt.Errorf("%s: cannot flatten %s", prefix, v.Type())
	}
	return nil
}

// flattenCty flattens a plugin configuration.
func flattenCty(dst map[string]any, prefix string, v cty.Value) error {
	if v == cty.NilVal || v.IsNull() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty.IsObjectType() || ty.IsMapType():
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if err := flattenCty(dst, prefix+"."+k.AsString(), e); err != nil {
				return err
			}
		}
	case ty == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		dst[prefix] = f
	case ty == cty.Bool:
		dst[prefix] = v.True()
	case ty == cty.String:
		dst[prefix] = v.AsString()
	default:
		js, err := ctyjson.Marshal(v, ty)
		if err != nil {
			return fmt.Errorf("%s: %w", prefix, err)
		}
		dst[prefix] = string(js)
	}
	return nil
}
