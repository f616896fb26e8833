package api

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// templateService is TemplateService: previews of a journey's templates.
type templateService struct{ c *specs[journey.Journey] }

func (h templateService) RenderPreview(ctx context.Context, req *connect.Request[omegav1.RenderPreviewRequest]) (*connect.Response[omegav1.RenderPreviewResponse], error) {
	m := req.Msg
	if m.GetJourneyId() == "" {
		return nil, invalid("journey_id", "required")
	}
	if m.GetTemplateId() == "" {
		return nil, invalid("template_id", "required")
	}
	j, err := h.c.store.Get(ctx, m.GetJourneyId())
	if err != nil {
		return nil, h.c.mapErr("get", err)
	}
	t, ok := j.Templates[m.GetTemplateId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("template_id: journey %s has no template %q", j.ID, m.GetTemplateId()))
	}
	title, body, err := t.Render(m.GetLocale(), m.GetFields().AsMap())
	if err != nil {
		return nil, invalid("fields", "%v", err)
	}
	return connect.NewResponse(&omegav1.RenderPreviewResponse{Title: title, Body: body, JourneyVersion: int32(j.Version)}), nil
}
