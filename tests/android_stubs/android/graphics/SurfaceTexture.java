package android.graphics;

public class SurfaceTexture {
    public SurfaceTexture(int texName) { throw new RuntimeException("Stub!"); }
}
